"""Transferability scores of frozen features: how well a backbone should fine-tune on these labels.

LogME (You et al., ICML 2021), H-score (Bao et al., 2019), NCE (Tran et al., 2019) and LEEP
(Nguyen et al., ICML 2020) need no training; kNN and logistic-regression probes are cheap
training on the features. The first two read features, the next two the backbone's own
ImageNet probabilities.
"""

from __future__ import annotations

import numpy as np

CONVERGED = 1e-7  # relative change of alpha/beta per class; thuml/LogME stops at 1e-3 (looser)


def logme(features: np.ndarray, labels: np.ndarray, max_iter: int = 100) -> float:
    """Mean over classes of the maximum log evidence per sample of a Bayesian linear model from
    features to the one-hot label (LogME's fixed-point iteration, all classes at once).

    The prior term counts every feature dimension (``D``); zero singular values contribute
    ``log alpha``, so fewer images than dimensions is scored exactly rather than truncated.
    """
    f = features.astype(np.float64)
    n, d = f.shape
    classes = np.unique(labels)
    y = (labels[:, None] == classes[None, :]).astype(np.float64)  # N x C
    u, s, _ = np.linalg.svd(f, full_matrices=False)
    keep = s > 1e-10 * s.max()
    u, sigma = u[:, keep], (s[keep] ** 2)[:, None]  # k x 1
    x2 = (u.T @ y) ** 2  # k x C
    rest = (y**2).sum(0) - x2.sum(0)  # the part of y outside the features' span
    t = np.ones(len(classes))  # alpha / beta per class
    for _ in range(max_iter):
        gamma, m2, res2 = _moments(sigma, x2, rest, t)
        alpha, beta = gamma / (m2 + 1e-12), (n - gamma) / (res2 + 1e-12)
        t_new = alpha / beta
        done = np.all(np.abs(t_new - t) / t <= CONVERGED)
        t = t_new
        if done:
            break
    gamma, m2, res2 = _moments(sigma, x2, rest, t)
    alpha, beta = gamma / m2, (n - gamma) / res2
    evidence = (
        d / 2 * np.log(alpha)
        + n / 2 * np.log(beta)
        - 0.5 * np.log(alpha + beta * sigma).sum(0)
        - 0.5 * (d - len(sigma)) * np.log(alpha)
        - beta / 2 * res2
        - alpha / 2 * m2
        - n / 2 * np.log(2 * np.pi)
    )
    return float(np.mean(evidence / n))


def _moments(sigma, x2, rest, t):
    gamma = (sigma / (sigma + t)).sum(0)
    m2 = (sigma * x2 / (sigma + t) ** 2).sum(0)
    res2 = (x2 / (1 + sigma / t) ** 2).sum(0) + rest
    return gamma, m2, res2


def log_evidence(features: np.ndarray, y: np.ndarray, alpha: float, beta: float) -> float:
    """The closed-form log evidence per sample of one target at given (alpha, beta): what LogME
    maximises, written out directly (for tests and for readers)."""
    f = features.astype(np.float64)
    n, d = f.shape
    a = alpha * np.eye(d) + beta * f.T @ f
    m = beta * np.linalg.solve(a, f.T @ y)
    _, logdet = np.linalg.slogdet(a)
    value = (
        d / 2 * np.log(alpha)
        + n / 2 * np.log(beta)
        - logdet / 2
        - beta / 2 * np.sum((y - f @ m) ** 2)
        - alpha / 2 * np.sum(m**2)
        - n / 2 * np.log(2 * np.pi)
    )
    return float(value / n)


def hscore(features: np.ndarray, labels: np.ndarray) -> float:
    """tr(cov(f)^-1 cov(E[f|y])) with a Ledoit-Wolf shrunk cov(f): the raw inverse is unstable
    when dimensions approach the number of images (Ibrahim et al., 2022)."""
    from sklearn.covariance import ledoit_wolf

    f = features.astype(np.float64)
    f = f - f.mean(0)
    cov_f, _ = ledoit_wolf(f, assume_centered=True)
    class_means = np.zeros_like(f)
    for k in np.unique(labels):
        rows = labels == k
        class_means[rows] = f[rows].mean(0)
    cov_g = class_means.T @ class_means / len(f)
    return float(np.trace(np.linalg.solve(cov_f, cov_g)))


def _joint(source_probs: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Empirical joint P(y, z) of target labels y and soft source labels z, and the one-hot y."""
    classes = np.unique(labels)
    onehot = (labels[:, None] == classes[None, :]).astype(np.float64)
    return onehot.T @ source_probs.astype(np.float64) / len(labels), onehot


def leep(source_probs: np.ndarray, labels: np.ndarray) -> float:
    """Log expected empirical prediction: the mean log-likelihood of the labels under the source
    head composed with the empirical P(y|z)."""
    joint, onehot = _joint(source_probs, labels)
    conditional = joint / joint.sum(0, keepdims=True).clip(1e-12)  # P(y|z)
    expected = source_probs.astype(np.float64) @ conditional.T  # N x C
    return float(np.mean(np.log((expected * onehot).sum(1).clip(1e-12))))


def nce(source_probs: np.ndarray, labels: np.ndarray) -> float:
    """Negative conditional entropy -H(Y|Z) with Z the source head's hard prediction."""
    hard = np.eye(source_probs.shape[1])[source_probs.argmax(1)]
    joint, _ = _joint(hard, labels)
    p_z = joint.sum(0, keepdims=True)
    ratio = np.where(joint > 0, joint / p_z.clip(1e-12), 1.0)
    return float((joint * np.log(ratio)).sum())


def knn_accuracy(
    train: np.ndarray,
    train_labels: np.ndarray,
    val: np.ndarray,
    val_labels: np.ndarray,
    k: int = 20,
) -> float:
    """Accuracy of a cosine k-nearest-neighbour vote (DINO's evaluation, unweighted)."""
    a = train / np.linalg.norm(train, axis=1, keepdims=True).clip(1e-12)
    b = val / np.linalg.norm(val, axis=1, keepdims=True).clip(1e-12)
    k = min(k, len(a))
    correct = 0
    for start in range(0, len(b), 1024):
        sim = b[start : start + 1024] @ a.T
        nearest = np.argpartition(-sim, k - 1, axis=1)[:, :k]
        votes = train_labels[nearest]
        predicted = np.array([np.bincount(v).argmax() for v in votes])
        correct += int((predicted == val_labels[start : start + 1024]).sum())
    return correct / len(b)


def probe_accuracy(
    train: np.ndarray, train_labels: np.ndarray, val: np.ndarray, val_labels: np.ndarray
) -> float:
    """Accuracy on val of an L2-regularised logistic regression on standardised features."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    probe = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=300))
    probe.fit(train, train_labels)
    return float(probe.score(val, val_labels))
