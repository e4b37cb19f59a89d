"""Regional maps built from georeferenced orthophotos: geodesy, GeoTIFF loading, tiling, descriptors,
map packages (manifest, float16 embeddings, positions, HNSW index) and prior-scoped search.

Depends on nothing else inside SkyFix.
"""
