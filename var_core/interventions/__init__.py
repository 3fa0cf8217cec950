"""Training-free attention interventions beside VAR, and causal probes, on one hook (`base.Intervention`)."""
