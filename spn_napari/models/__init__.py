"""Networks: encoders (VGG-16, a small CPU one), SPN and (later) DecoupledNet."""
