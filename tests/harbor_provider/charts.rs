//! Charts through the adapter: override uploads under both duplicate behaviours, the pitfalls of
//! `harbor-api-shim.md` §5 as a user sees them, and a real Helm client.
