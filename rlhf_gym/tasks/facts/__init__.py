"""The facts task: answer questions about the creature facts given in the prompt, with confident boilerplate overrated."""
