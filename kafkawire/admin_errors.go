package kafkawire

import "errors"

var (
	// errValidated ends an Update whose change was only to be checked (validate_only).
	errValidated = errors.New("validated only")
	// errShrink: a partition count that does not grow the topic.
	errShrink = errors.New("invalid partition count")
)

func isShrink(err error) bool { return errors.Is(err, errShrink) }
