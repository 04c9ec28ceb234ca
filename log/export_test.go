package log

// The internal tests' helpers, for the external test package (log_test),
// whose tests use log/logtest: logtest imports log, so tests in package
// log cannot import it.
var (
	TestBatch     = testBatch
	WithProducer  = withProducer
	QuietLogger   = quietLogger
	TruncFixture  = truncFixture
	CheckPrefix   = checkPrefix
	SetBaseOffset = setBaseOffset
)

// setBaseOffset writes the offset the log gave a batch into its header, as
// the log stores it (the base offset is outside the CRC).
func setBaseOffset(b []byte, off int64) {
	for i := 0; i < 8; i++ {
		b[7-i] = byte(off >> (8 * i))
	}
}
