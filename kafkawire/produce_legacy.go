package kafkawire

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"

	"github.com/twmb/franz-go/pkg/kerr"

	"github.com/mqstreams/mqstreams/log"
)

// Produce v0-2 carry message sets of magic 0 and 1 (Kafka before 0.11). They are
// served because librdkafka up to 2.11.0 compresses with gzip, snappy or lz4 only
// when the broker's Produce range includes v0 (it asks whether Produce v0..0 is
// supported), and clients pinned to an old protocol (sarama with an old Version) send
// them whatever is advertised. There are no headers, producer ids or sequences.

// Message v0/v1 layout: offset (8), size (4), then the message: crc (4, CRC-32 IEEE
// of the rest), magic (1), attributes (1), timestamp (8, magic 1 only), key and value
// as int32-length bytes (-1 is null).
const (
	msgSetLogOverhead = 12
	msgV0HeaderLen    = 4 + 1 + 1 + 4 + 4
)

// decodeMessageSet decodes a v0/v1 message set, inflating compressed wrapper messages
// (whose value is an inner message set of uncompressed messages).
func decodeMessageSet(raw []byte, maxBytes int, charge chargeFunc) ([]log.Record, *batchError) {
	if len(raw) == 0 {
		return nil, refuse(kerr.CorruptMessage, "empty message set")
	}
	var out []log.Record
	inflated := 0
	err := walkMessageSet(raw, func(magic, attrs int8, key, value []byte) error {
		codec := int16(attrs & attrCodecMask)
		if codec == codecNone {
			out = append(out, log.Record{Key: key, Value: value})
			return nil
		}
		if codec == codecZstd {
			return refuse(kerr.UnsupportedCompressionType, "zstd needs record batches (magic 2), not magic %d", magic)
		}
		inner, err := decompress(codec, value, maxBytes-inflated, charge)
		if err != nil {
			if errors.Is(err, errInflatedTooLarge) {
				return refuse(kerr.MessageTooLarge, "%v", err)
			}
			if errors.Is(err, errBudget) {
				return refuse(kerr.RequestTimedOut, "%v", err)
			}
			return refuse(kerr.CorruptMessage, "%v", err)
		}
		inflated += len(inner)
		return walkMessageSet(inner, func(_, innerAttrs int8, k, v []byte) error {
			if innerAttrs&attrCodecMask != 0 {
				return refuse(kerr.CorruptMessage, "compressed message inside a compressed message")
			}
			out = append(out, log.Record{Key: k, Value: v})
			return nil
		})
	})
	if err != nil {
		var be *batchError
		if errors.As(err, &be) {
			return nil, be
		}
		return nil, refuse(kerr.CorruptMessage, "%v", err)
	}
	if len(out) == 0 {
		return nil, refuse(kerr.InvalidRecord, "message set holds no messages")
	}
	return out, nil
}

// walkMessageSet calls fn for each message of a v0/v1 message set, after checking its
// CRC. Key and value alias raw.
func walkMessageSet(raw []byte, fn func(magic, attrs int8, key, value []byte) error) error {
	for len(raw) > 0 {
		if len(raw) < msgSetLogOverhead {
			return fmt.Errorf("message set: %d bytes left, less than a message header", len(raw))
		}
		size := int32(binary.BigEndian.Uint32(raw[8:12]))
		if size < msgV0HeaderLen || int(size) > len(raw)-msgSetLogOverhead {
			return fmt.Errorf("message set: message size %d with %d bytes left", size, len(raw)-msgSetLogOverhead)
		}
		msg := raw[msgSetLogOverhead : msgSetLogOverhead+int(size)]
		raw = raw[msgSetLogOverhead+int(size):]
		if crc := crc32.ChecksumIEEE(msg[4:]); binary.BigEndian.Uint32(msg) != crc {
			return fmt.Errorf("message CRC-32 is %08x, computed %08x", binary.BigEndian.Uint32(msg), crc)
		}
		magic, attrs := int8(msg[4]), int8(msg[5])
		rest := msg[6:]
		switch magic {
		case 0:
		case 1:
			if len(rest) < 8 {
				return errors.New("magic 1 message cut short")
			}
			rest = rest[8:] // the producer's timestamp; the log stamps its own
		default:
			return refuse(kerr.InvalidRecord, "message of magic %d in a message set", magic)
		}
		key, rest, ok := legacyBytes(rest)
		if !ok {
			return errors.New("message key cut short")
		}
		value, rest, ok := legacyBytes(rest)
		if !ok || len(rest) != 0 {
			return errors.New("message value does not fill the message")
		}
		if err := fn(magic, attrs, key, value); err != nil {
			return err
		}
	}
	return nil
}

// legacyBytes reads int32-length bytes; -1 is nil.
func legacyBytes(b []byte) (v, rest []byte, ok bool) {
	if len(b) < 4 {
		return nil, nil, false
	}
	n := int32(binary.BigEndian.Uint32(b))
	b = b[4:]
	switch {
	case n == -1:
		return nil, b, true
	case n < 0 || int(n) > len(b):
		return nil, nil, false
	}
	return b[:n:n], b[n:], true
}
