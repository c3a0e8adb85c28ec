package cluster

import (
	"fmt"

	"github.com/rs/zerolog"
)

// raftLogger hands go.etcd.io/raft/v3's log lines (its raft.Logger interface) to
// zerolog: its info lines (elections, terms) at debug, so a healthy cluster is quiet.
type raftLogger struct{ lg zerolog.Logger }

func (r raftLogger) Debug(v ...interface{})                   { r.lg.Trace().Msg(fmt.Sprint(v...)) }
func (r raftLogger) Debugf(format string, v ...interface{})   { r.lg.Trace().Msgf(format, v...) }
func (r raftLogger) Info(v ...interface{})                    { r.lg.Debug().Msg(fmt.Sprint(v...)) }
func (r raftLogger) Infof(format string, v ...interface{})    { r.lg.Debug().Msgf(format, v...) }
func (r raftLogger) Warning(v ...interface{})                 { r.lg.Warn().Msg(fmt.Sprint(v...)) }
func (r raftLogger) Warningf(format string, v ...interface{}) { r.lg.Warn().Msgf(format, v...) }
func (r raftLogger) Error(v ...interface{})                   { r.lg.Error().Msg(fmt.Sprint(v...)) }
func (r raftLogger) Errorf(format string, v ...interface{})   { r.lg.Error().Msgf(format, v...) }
func (r raftLogger) Fatal(v ...interface{})                   { r.Panic(v...) }
func (r raftLogger) Fatalf(format string, v ...interface{})   { r.Panicf(format, v...) }
func (r raftLogger) Panic(v ...interface{}) {
	s := fmt.Sprint(v...)
	r.lg.Error().Msg(s)
	panic(s)
}
func (r raftLogger) Panicf(format string, v ...interface{}) {
	s := fmt.Sprintf(format, v...)
	r.lg.Error().Msg(s)
	panic(s)
}
