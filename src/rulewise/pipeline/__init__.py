"""Recipes (typed YAML pipelines) and the runner that executes them stage by stage."""
