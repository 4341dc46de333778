"""LightningDataModules: one class per storage format, one yaml per dataset."""
