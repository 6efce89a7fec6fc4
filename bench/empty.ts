// An empty program: what the Deno runtime alone costs to start and stop.
