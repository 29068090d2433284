# splicer, copy data plane (configuration in ../splicer.sh).
splicer_plane=copy
source "$bench_lib/splicer.sh"
