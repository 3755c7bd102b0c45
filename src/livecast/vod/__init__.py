"""Past broadcasts: segments archived to object storage while live, served as HLS VODs."""
