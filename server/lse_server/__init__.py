"""lse-server: a language server over the LSE engine (pygls 2, lsprotocol)."""
