"""What programs in other languages use to work with Orrery, generated from the Python sources so they cannot drift:
the TypeScript producer's job table (clients/typescript) and the value lists and JSON shapes of docs/contract.md."""
