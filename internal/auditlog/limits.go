package auditlog

// Limits.
const (
	// MaxLine bounds one record's line (a longer reason is cut short).
	MaxLine = 64 << 10
	// DefaultMaxSegment is the size at which a segment is closed and the
	// next one started.
	DefaultMaxSegment = 16 << 20
	// DefaultKeepSegments is how many segments are kept; older ones are
	// removed (their records fall out of queries, and Verify reports where
	// the kept trail starts).
	DefaultKeepSegments = 64
	// MaxQueryLimit bounds the records of one query page.
	MaxQueryLimit = 1000
	// maxProblems bounds what Verify lists.
	maxProblems = 100
)
