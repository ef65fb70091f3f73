"""Tool calling: the client's tool definitions, their prompt, the call parser, the filter."""
