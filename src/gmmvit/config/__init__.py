"""The config at the top: its typed schema, the checks its types cannot say, the one-line refusals
and error policy, and the Hydra glue (resolvers, callbacks, composing without a launcher)."""
