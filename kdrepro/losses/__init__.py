"""Distillation losses, named by what is transferred: `response` (the teacher's outputs), `feature`
(intermediate activations), `relation` (relations between layers or samples) and `sequence` (generated text)."""
