#include "support/esi_synth.hpp"

#include <random>

namespace taskhost::testing {

EsiExpected esi_synth(const fixedwidth::Layout& layout, const EsiSynthOptions& o,
                      const std::function<void(std::string_view)>& write) {
  using fixedwidth::RecordBuilder;
  std::mt19937_64 rng(o.seed);
  auto pick = [&](uint64_t n) { return static_cast<int64_t>(rng() % n); };
  const std::string end = o.crlf ? "\r\n" : "\n";
  EsiExpected ex;

  RecordBuilder hd(layout, "HD");
  hd.text("transmission_type", "T")
      .number("creation_date", 20261130)
      .number("creation_time", 2359)
      .text("sender_id", "ESI")
      .text("receiver_id", "MAVEN")
      .number("batch_number", std::stoll(o.batch))
      .text("file_type", "T")
      .text("version_number", "10");
  write(hd.str() + end);

  // Latin-1 bytes on purpose: the parser must hand them on as UTF-8.
  static const char* first[] = {"Ana", "Jos\xE9", "Zo\xEB", "Bj\xF6rn", "Mary", "Luis"};
  static const char* last[] = {"Smith",
                               "M\xFCller",
                               "Pe\xF1"
                               "a",
                               "O'Neil",
                               "Garc\xED"
                               "a",
                               "Lee"};
  static const char* qualifiers[] = {"02", "04", "05", "06"};
  const uint64_t policies = o.records / 4 + 1;
  std::string buffer;
  for (uint64_t i = 1; i <= o.records; ++i) {
    RecordBuilder dt(layout, "DT");
    const bool dq = pick(10) < 7;
    const char status = dq ? ' ' : "AAAR"[pick(4)];
    const std::string policy = "POL" + std::to_string(100000 + pick(policies));
    ex.totals.try_emplace(policy, 0, 0);
    ++ex.dt;
    if (dq) ++ex.dq;
    if (status == 'A') ++ex.dr_accepted;
    if (status == 'R') ++ex.dr_rejected;
    dt.text("transmission_file_type", dq ? "DQ" : "DR")
        .text("version_release", "10")
        .text("sender_id", "ESI")
        .text("receiver_id", "MAVEN")
        .number("submission_number", static_cast<int64_t>(i % 10000))
        .text("transaction_response_status", std::string(1, status))
        .text("reject_code", status == 'R' ? "052" : "000")
        .number("record_length", 1700)
        .number("transmission_date", 20261130)
        .text("transmission_time", "23590000")
        .number("date_of_service", 20260101 + pick(12) * 100 + pick(28))
        .text("transmission_id", o.id_prefix + std::to_string(i))
        .text("benefit_type", "D")
        .text("accumulator_action_code", "00")
        .number("benefit_effective_date", 20260101)
        .number("benefit_termination_date", 20261231)
        .text("cardholder_id", "CH" + std::to_string(pick(1000000)))
        .text("patient_first_name", first[pick(6)])
        .text("patient_last_name", last[pick(6)])
        .text("patient_relationship_code", "1")
        .number("date_of_birth", 19500101 + pick(50) * 10000 + pick(12) * 100 + pick(28))
        .text("patient_gender_code", std::to_string(pick(3)))
        .text("patient_state", "VA")
        .text("cardholder_id_alternate", policy)
        .text("product_service_id", "00093" + std::to_string(100000 + pick(900000)))
        .number("days_supply", 30)
        .number("quantity_dispensed", 30000 + pick(1000))
        .text("drug_name", "SYNTHETICOL 10MG");
    const int blocks = 1 + static_cast<int>(pick(4));
    dt.number("accumulator_balance_count", blocks);
    for (int b = 1; b <= blocks; ++b) {
      const std::string n = "accumulator_" + std::to_string(b) + "_";
      const std::string q = qualifiers[pick(4)];
      const int64_t applied = (pick(5) == 0 ? -1 : 1) * pick(100000);
      dt.text(n + "qualifier", q)
          .text(n + "network_indicator", "1")
          .number(n + "applied_amount", applied)
          .number(n + "benefit_period_amount", pick(500000))
          .number(n + "remaining_balance", pick(500000));
      if (dq || status == 'A') {
        if (q == "04") ex.totals[policy].first += applied;
        if (q == "05") ex.totals[policy].second += applied;
      }
    }
    dt.number("total_amount_paid", pick(1000000))
        .number("copay_amount", pick(5000))
        .number("patient_pay_amount", pick(5000));
    buffer += dt.str();
    buffer += end;
    if (buffer.size() >= (1u << 20)) {
      write(buffer);
      buffer.clear();
    }
  }
  write(buffer);
  RecordBuilder tr(layout, "TR");
  tr.number("batch_number", std::stoll(o.batch))
      .number("record_count", static_cast<int64_t>(o.records));
  write(tr.str() + end);
  return ex;
}

std::string esi_synth_file(const fixedwidth::Layout& layout, const EsiSynthOptions& options,
                           EsiExpected* expected) {
  std::string out;
  EsiExpected ex = esi_synth(layout, options, [&](std::string_view s) { out.append(s); });
  if (expected) *expected = std::move(ex);
  return out;
}

}  // namespace taskhost::testing
