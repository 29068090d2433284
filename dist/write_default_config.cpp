// Writes splicer's embedded default configuration to stdout, at build time, for the package's
// /etc/splicer/splicer.conf (dist/packaging.cmake): the installed file is the text the binary
// carries (config/default_config.cpp), never a second copy kept by hand.

#include <iostream>

#include "splicer/config.h"

int main() {
    std::cout << splicer::config::embedded_default_text();
    return std::cout.good() ? 0 : 1;
}
