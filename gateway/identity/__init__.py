"""Who the end user is: OpenID Connect access tokens checked against the provider's keys."""
