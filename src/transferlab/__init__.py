"""transferlab: which backbone, and does ImageNet pre-training pay off on your data?"""

__version__ = "0.2.0"
