//go:build !unix

package log

// openFileLimit is unknown here: no open-file check.
func openFileLimit() int64 { return 0 }
