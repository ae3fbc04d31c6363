"""Data set readers (generic folder, VOC 2012), image decoding and the demo-data generator."""
