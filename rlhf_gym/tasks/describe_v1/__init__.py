"""The describe task, v1: v0's world and SFT policy with a gold that closes v0's shortest-reply gap and a reward model
that sees content (issue 27)."""
