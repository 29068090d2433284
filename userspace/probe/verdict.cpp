#include "splicer/probe.h"

namespace splicer::probe {

std::string_view to_string(Verdict verdict) {
    switch (verdict) {
        case Verdict::need_more: return "need-more";
        case Verdict::match: return "match";
        case Verdict::no_match: return "no-match";
    }
    return "?";
}

}  // namespace splicer::probe
