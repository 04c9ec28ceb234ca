// Package mirror will own segment shipping from an edge to a full-mode
// center: the sender that reads durable, batch-aligned ranges of the log and
// ships them zstd-compressed, the receiver that verifies and appends them
// with the edge's offsets, the wire format and the checkpoints (in bbolt).
//
// It reads the log through its public API only, never a front end; it never
// deletes data itself, it only pins what is not yet shipped.
package mirror
