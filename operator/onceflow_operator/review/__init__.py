"""What operations people see and do: exceptions, decisions, trace, figures, the review console."""
