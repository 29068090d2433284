# Four bar charts, one bar per forwarder, from chart.dat (written by report.sh).
# Usage: gnuplot -e "data='chart.dat'; output='chart.png'" chart.gnuplot
set terminal pngcairo size 1400,900 noenhanced font ",10"
set output output
set style data histograms
set style fill solid 0.8 border -1
set boxwidth 0.8
set xtics rotate by -35 nomirror
set grid ytics
set key off
set yrange [0:*]
set datafile missing "NaN"
set multiplot layout 2,2 title "splicer benchmark: forwarders side by side (one run)"
set title "bulk, 1 stream, client to backend (Gb/s, higher is better)"
plot data using 2:xtic(1) skip 1 linecolor rgb "#4477aa"
set title "new TLS connections per second (higher is better)"
plot data using 3:xtic(1) skip 1 linecolor rgb "#228833"
set title "keep-alive HTTPS requests per second (higher is better)"
plot data using 4:xtic(1) skip 1 linecolor rgb "#ccbb44"
set title "ping-pong 64 B, p99 round trip (µs, lower is better)"
plot data using 5:xtic(1) skip 1 linecolor rgb "#ee6677"
unset multiplot
