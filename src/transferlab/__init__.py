"""transferlab: which backbone, and does ImageNet pre-training pay off on your data?"""

__version__ = "0.1.0"
