"""The data: datasets through torchvision's classes, the paper's augmentation per image and per
batch, which images a run sees and in which order, and the device-resident loader."""
