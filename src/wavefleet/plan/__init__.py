"""Planning: inventory, sizing, MoSCoW priorities, placements, findings, roadmap, reports."""
