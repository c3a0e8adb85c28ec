package kafkawire

import (
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/mqstreams/mqstreams/log"
)

// DescribeLogDirs: v0-4.
//
// One log dir, the data dir, holding every partition; a partition's size is the bytes
// of record batches its shard retains. Only topics the principal may describe (read or
// admin) are shown; unknown topics and partitions are left out, as Kafka does. v2 is
// flexible, v3 adds a top-level error code, v4 the dir's total and usable bytes (-1,
// not measured).

func init() { register(35, 0, 4, handleDescribeLogDirs) }

func handleDescribeLogDirs(s *Server, c *conn, kreq kmsg.Request) (kmsg.Response, error) {
	req := kreq.(*kmsg.DescribeLogDirsRequest)
	resp := req.ResponseKind().(*kmsg.DescribeLogDirsResponse)
	dir := kmsg.NewDescribeLogDirsResponseDir()
	dir.Dir = s.log.Dir()
	dir.TotalBytes, dir.UsableBytes = -1, -1
	describe := func(st *log.Stream, parts []int32) {
		if !s.mayDescribe(c, st.Name()) {
			return
		}
		t := kmsg.NewDescribeLogDirsResponseDirTopic()
		t.Topic = st.Name()
		n := st.Shards()
		if parts == nil {
			for i := int32(0); i < n; i++ {
				parts = append(parts, i)
			}
		}
		for _, i := range parts {
			if i < 0 || i >= n {
				continue
			}
			p := kmsg.NewDescribeLogDirsResponseDirTopicPartition()
			p.Partition, p.Size = i, st.Size(i)
			t.Partitions = append(t.Partitions, p)
		}
		dir.Topics = append(dir.Topics, t)
	}
	if req.Topics == nil {
		for _, st := range s.log.Streams() {
			describe(st, nil)
		}
	} else {
		for _, rt := range req.Topics {
			if st := s.stream(rt.Topic); st != nil {
				describe(st, rt.Partitions)
			}
		}
	}
	resp.Dirs = append(resp.Dirs, dir)
	return resp, nil
}
