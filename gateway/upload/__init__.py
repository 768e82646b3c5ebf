"""The upload path: the strict form reader, the gateway's own upstream body, the flow and its handler."""
