// Package ctkip implements CT-KIP (RFC 4758) in the dialect that deployed RSA
// SecurID software speaks, for provisioning 128-bit AES software tokens.
//
// The package owns the wire protocol and nothing else: AES-CMAC and the
// CT-KIP-PRF, RSA-OAEP decryption of the client nonce, seed and MAC
// derivation, byte-exact rendering of the server messages, tolerant parsing of
// the client messages, the session state between the two POSTs (in memory,
// or in a caller's SessionStore shared by the nodes of a cluster), an
// http.Handler (Server) and a device-like client (Client). Activation codes,
// tokens, persistence, rate-limit policy and metrics backends belong to the
// caller, reached through the small Backend, Limiter, Auditor and Recorder
// interfaces.
//
// RSA deviations from RFC 4758: the PRF appends the block counter (s || 00000001,
// one block), K_TOKEN = PRF(R_C, modulus || "Key generation" || R_S), the MAC label
// is "MAC 2 Computation", and R_C is encrypted with RSA-OAEP/SHA-1 although rsa-1_5
// is advertised. See docs/ctkip.md for the full list and the test vectors.
package ctkip
