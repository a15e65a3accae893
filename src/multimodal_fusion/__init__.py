"""multimodal-fusion"""

__version__ = "0.1"
