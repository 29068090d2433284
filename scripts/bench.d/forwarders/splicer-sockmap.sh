# splicer, sockmap data plane (configuration in ../splicer.sh).
splicer_plane=sockmap
source "$bench_lib/splicer.sh"
