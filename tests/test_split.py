"""Splits are stratified, seeded, and never leak a group across train and val."""

from __future__ import annotations

import numpy as np
import pytest

from transferlab.data.split import split_stratified, take_per_class


def test_every_class_keeps_its_share_in_val():
    labels = np.repeat(np.arange(4), [100, 50, 20, 10])
    train, val = split_stratified(labels, 0.2, seed=0)
    assert set(train).isdisjoint(val) and len(train) + len(val) == len(labels)
    assert np.bincount(labels[val]).tolist() == [20, 10, 4, 2]


def test_ninety_ten_split():
    labels = np.repeat(np.arange(2), 50)
    _, val = split_stratified(labels, 0.1, seed=0)
    assert np.bincount(labels[val]).tolist() == [5, 5]


def test_same_seed_same_split_other_seed_other_split():
    labels = np.repeat(np.arange(3), 30)
    a = split_stratified(labels, 0.2, seed=1)[1]
    assert np.array_equal(a, split_stratified(labels, 0.2, seed=1)[1])
    assert not np.array_equal(a, split_stratified(labels, 0.2, seed=2)[1])


def test_groups_never_straddle_the_split():
    groups = np.repeat(np.arange(40), 3)  # 3 near-duplicate shots of each item
    labels = (np.arange(40) % 2).repeat(3)
    train, val = split_stratified(labels, 0.25, seed=0, groups=groups)
    assert set(groups[train]).isdisjoint(groups[val])
    assert set(labels[val]) == {0, 1}


def test_take_per_class_is_balanced_and_seeded():
    labels = np.repeat(np.arange(3), [50, 40, 5])
    picked = take_per_class(labels, 10, seed=0)
    assert np.bincount(labels[picked]).tolist() == [10, 10, 5]
    assert np.array_equal(picked, take_per_class(labels, 10, seed=0))


def test_bad_fraction_names_the_option():
    with pytest.raises(ValueError, match=r"data\.val_fraction"):
        split_stratified(np.zeros(10), 1.5, seed=0)
