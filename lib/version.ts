/** The plugin's version, printed by `--version` and sent nowhere. */
export const VERSION = "0.1.0";
