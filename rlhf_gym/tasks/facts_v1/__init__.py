"""The facts task, v1: v0's world and SFT policy with a reward model that sees content (issue 27)."""
