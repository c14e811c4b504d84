"""The gateway's security layer: API keys, OIDC identity, limits, prompt screening, audit, TLS.

Each part is a small object built from arguments, in a module of its own: `settings` (the
config's `security:` section, pydantic only), `authn` (who is asking), `limits` and
`limits_redis`, `screening`, `audit` (requests) and `events` (operator actions), `keys` and `db`
(stored keys, the trail's tables), `oidc`, `tls`.
`gate.SecurityGate` puts them together and `middleware.install(app, gate)` wires it into the
gateway's aiohttp app. This package imports none of them, so the config schema stays light.
"""
