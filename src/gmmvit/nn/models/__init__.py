"""One file per architecture family; each model takes (img_size, in_chans, num_classes, mask)."""
