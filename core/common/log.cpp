#include "common/log.hpp"

#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/base_sink.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <chrono>
#include <cstdio>
#include <mutex>
#include <nlohmann/json.hpp>

#include "common/error.hpp"
#include "common/text.hpp"

namespace taskhost {
namespace {

// One JSON object a line; the message is escaped by nlohmann, so any text a
// plugin logs stays one parseable line.
class JsonLinesSink : public spdlog::sinks::base_sink<std::mutex> {
 protected:
  void sink_it_(const spdlog::details::log_msg& msg) override {
    auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(msg.time.time_since_epoch());
    nlohmann::json line = {
        {"time_ms", ms.count()},
        {"level", spdlog::level::to_string_view(msg.level)},
        {"msg", std::string(msg.payload.data(), msg.payload.size())},
    };
    std::string text = line.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
    std::fwrite(text.data(), 1, text.size(), stderr);
  }
  void flush_() override { std::fflush(stderr); }
};

// %* in a text pattern: the message with control characters escaped, so
// text a plugin (or anyone) put in a message cannot forge log lines or send
// escape sequences to the operator's terminal.
class PrintableMessage : public spdlog::custom_flag_formatter {
 public:
  void format(const spdlog::details::log_msg& msg, const std::tm&,
              spdlog::memory_buf_t& dest) override {
    std::string text = printable(std::string_view(msg.payload.data(), msg.payload.size()));
    dest.append(text.data(), text.data() + text.size());
  }
  std::unique_ptr<custom_flag_formatter> clone() const override {
    return std::make_unique<PrintableMessage>();
  }
};

}  // namespace

void setup_logging(LogFormat format, const std::string& level) {
  auto lvl = spdlog::level::from_str(level);
  if (lvl == spdlog::level::off && level != "off")
    throw Error(
        ErrorKind::invalid,
        "--log-level: expected trace, debug, info, warn, error or off, got '" + level + "'");
  std::shared_ptr<spdlog::logger> logger;
  if (format == LogFormat::json) {
    logger = std::make_shared<spdlog::logger>("taskhost", std::make_shared<JsonLinesSink>());
  } else {
    logger = spdlog::stderr_color_mt("taskhost");
    auto formatter = std::make_unique<spdlog::pattern_formatter>();
    formatter->add_flag<PrintableMessage>('*').set_pattern("%Y-%m-%d %H:%M:%S.%e %^%l%$ %*");
    logger->set_formatter(std::move(formatter));
  }
  logger->set_level(lvl);
  spdlog::set_default_logger(logger);
}

}  // namespace taskhost
