"""geovlm: vision-language models on post-disaster GeoTIFFs, results as GeoPackage layers."""

__version__ = "0.1.0"
