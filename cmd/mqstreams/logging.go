package main

import (
	"fmt"
	"io"
	"os"
	"time"

	"github.com/rs/zerolog"
)

// newLogger builds the process logger: JSON lines unless format is "console", or format
// is empty and out is a terminal (a person is watching, not a log shipper).
func newLogger(out io.Writer, level, format string) (zerolog.Logger, error) {
	lvl, err := zerolog.ParseLevel(level)
	if err != nil || level == "" {
		return zerolog.Nop(), fmt.Errorf("flag --log-level: unknown level %q (trace, debug, info, warn, error)", level)
	}
	zerolog.TimeFieldFormat = "2006-01-02T15:04:05.000Z07:00"
	w := out
	switch format {
	case "json":
	case "console":
		w = consoleWriter(out)
	case "":
		if isTerminal(out) {
			w = consoleWriter(out)
		}
	default:
		return zerolog.Nop(), fmt.Errorf("flag --log-format: unknown format %q (json, console)", format)
	}
	return zerolog.New(w).Level(lvl).With().Timestamp().Logger(), nil
}

func consoleWriter(out io.Writer) io.Writer {
	return zerolog.ConsoleWriter{Out: out, TimeFormat: time.TimeOnly + ".000"}
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
