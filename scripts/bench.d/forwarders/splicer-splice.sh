# splicer, splice data plane (configuration in ../splicer.sh).
splicer_plane=splice
source "$bench_lib/splicer.sh"
