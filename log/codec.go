package log

// Adapter for the compression libraries stored batches use: pierrec/lz4/v4 (the LZ4
// frame format Kafka clients read) and klauspost/compress/zstd. Only merged batches are
// compressed (coalesce.go); the committer's batches never are.

import (
	"bytes"
	"fmt"
	"io"
	"sync"

	"github.com/klauspost/compress/zstd"
	"github.com/pierrec/lz4/v4"
)

// codec is a Kafka record batch compression, as the low 3 attribute bits carry it.
type codec int8

const (
	codecNone codec = 0
	codecLZ4  codec = 3
	codecZstd codec = 4
)

// Compression names a stream's stored batch compression (StreamSpec.Compression).
const (
	CompressionNone = "none"
	CompressionLZ4  = "lz4"
	CompressionZstd = "zstd"
)

func codecOf(attributes int16) codec { return codec(attributes & 0x07) }

// parseCodec maps a StreamSpec.Compression value to its codec; "" is none.
func parseCodec(name string) (codec, error) {
	switch name {
	case "", CompressionNone:
		return codecNone, nil
	case CompressionLZ4:
		return codecLZ4, nil
	case CompressionZstd:
		return codecZstd, nil
	}
	return 0, fmt.Errorf("compression %q: want none, lz4 or zstd", name)
}

var (
	lz4Writers = sync.Pool{New: func() any {
		w := lz4.NewWriter(nil)
		// 64 KiB blocks and no content checksum, as Kafka's Java producer writes
		// LZ4 frames: every Kafka client reads those.
		_ = w.Apply(lz4.BlockSizeOption(lz4.Block64Kb), lz4.ChecksumOption(false), lz4.CompressionLevelOption(lz4.Fast))
		return w
	}}
	lz4Readers = sync.Pool{New: func() any { return lz4.NewReader(nil) }}

	zstdOnce sync.Once
	zstdEnc  *zstd.Encoder
	zstdDec  *zstd.Decoder
)

func zstdCodecs() (*zstd.Encoder, *zstd.Decoder) {
	zstdOnce.Do(func() {
		// Both are safe for concurrent EncodeAll/DecodeAll; a 1 MiB window keeps
		// frames readable by every client's decoder defaults.
		zstdEnc, _ = zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedDefault), zstd.WithWindowSize(1<<20), zstd.WithEncoderConcurrency(2))
		zstdDec, _ = zstd.NewReader(nil, zstd.WithDecoderConcurrency(2), zstd.WithDecoderMaxMemory(256<<20))
	})
	return zstdEnc, zstdDec
}

type appendWriter struct{ b []byte }

func (w *appendWriter) Write(p []byte) (int, error) { w.b = append(w.b, p...); return len(p), nil }

// compress appends src compressed with c to dst.
func compress(dst, src []byte, c codec) ([]byte, error) {
	// Room for the output at once: compressed data is rarely larger than its input.
	if need := len(src) + len(src)/64 + 1024; cap(dst)-len(dst) < need {
		dst = append(make([]byte, 0, len(dst)+need), dst...)
	}
	switch c {
	case codecNone:
		return append(dst, src...), nil
	case codecLZ4:
		zw := lz4Writers.Get().(*lz4.Writer)
		defer lz4Writers.Put(zw)
		aw := &appendWriter{b: dst}
		zw.Reset(aw)
		if _, err := zw.Write(src); err != nil {
			return dst, fmt.Errorf("lz4: %w", err)
		}
		if err := zw.Close(); err != nil {
			return dst, fmt.Errorf("lz4: %w", err)
		}
		zw.Reset(nil)
		return aw.b, nil
	case codecZstd:
		enc, _ := zstdCodecs()
		return enc.EncodeAll(src, dst), nil
	}
	return dst, fmt.Errorf("compress: codec %d not supported", c)
}

// decompress returns src decompressed with c, appended to dst; with no compression it
// returns src itself.
func decompress(dst, src []byte, c codec) ([]byte, error) {
	switch c {
	case codecNone:
		return src, nil
	case codecLZ4:
		zr := lz4Readers.Get().(*lz4.Reader)
		defer lz4Readers.Put(zr)
		zr.Reset(bytes.NewReader(src))
		if cap(dst)-len(dst) < 4*len(src) {
			dst = append(make([]byte, 0, len(dst)+4*len(src)), dst...)
		}
		for {
			if len(dst) == cap(dst) {
				dst = append(dst, 0)[:len(dst)]
			}
			n, err := zr.Read(dst[len(dst):cap(dst)])
			dst = dst[:len(dst)+n]
			if err == io.EOF {
				zr.Reset(nil)
				return dst, nil
			}
			if err != nil {
				return nil, fmt.Errorf("lz4: %w", err)
			}
		}
	case codecZstd:
		_, dec := zstdCodecs()
		out, err := dec.DecodeAll(src, dst)
		if err != nil {
			return nil, fmt.Errorf("zstd: %w", err)
		}
		return out, nil
	}
	return nil, fmt.Errorf("decompress: codec %d not supported", c)
}
