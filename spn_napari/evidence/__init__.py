"""The SPN's evidence: superpixels, the frozen encoder's maps, CAM and SP-CAM, round-0 pseudo-labels and per-superpixel descriptors."""
