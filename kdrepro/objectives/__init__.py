"""Objectives: what a model minimises on a batch, one per method, laid out as `kdrepro.losses` is.

- `task`: the objectives without a teacher (cross-entropy, the triplet loss, sequence NLL);
- `response`: the teacher's outputs (Hinton KD, mutual learning, born-again variants);
- `feature`: its intermediate activations (FitNets' hints, attention transfer);
- `relation`: relations between layers (FSP) or between examples (RKD);
- `sequence`: sequence models (word-level and sequence-level KD).

An objective is a frozen dataclass of the method's settings, so it can key the cache and print itself. It
returns its loss as named terms ({"ce": ..., "kd": ...}); `fit` sums them and records each term per epoch, so a
learning curve shows which term moved. The teacher, when there is one, comes from the scheme
(`kdrepro.schemes`), never from the objective.
"""

from kdrepro.objectives.base import Context, Objective

__all__ = ["Context", "Objective"]
