"""The lists task: list k members of a category (maybe "but not" some), where annotators favour longer lists."""
