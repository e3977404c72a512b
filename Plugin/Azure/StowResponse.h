#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace AzureDicom
{
// DICOM status codes of the Azure DICOM service that the plugin acts on.
const unsigned int REASON_PROCESSING_FAILURE = 272;       // 0x0110: retried with backoff
const unsigned int REASON_VALIDATION_FAILED = 43264;      // 0xA900: refused, never retried
const unsigned int REASON_STUDY_UID_MISMATCH = 43265;     // 0xA901: older services, refused
const unsigned int REASON_ALREADY_EXISTS = 45070;         // 0xB00E: a success, never retried
const unsigned int REASON_BEING_CREATED = 45071;          // 0xB00F: retried after a delay
const unsigned int WARNING_COERCED = 45063;               // 0xB007: stored with coercion
const unsigned int WARNING_ELEMENTS_DISCARDED = 1;        // v2 warning: stored anyway


// What the plugin does with one instance of a batch, after an answer of the service.
enum class InstanceDisposition
{
  Mirrored,        // stored by this request
  AlreadyPresent,  // the service had it already (45070)
  RetryLater,      // 45071, or unconfirmed: retried after a delay, counting an attempt
  RetryBackoff,    // 272 processing failure: retried with backoff, then Failed
  Failed           // refused for good (validation, malformed request)
};


struct InstanceResult
{
  InstanceDisposition disposition = InstanceDisposition::RetryLater;
  unsigned int failureReason = 0;
  unsigned int warningReason = 0;
  std::string message;
};


// What the whole answer means for the dispatcher.
enum class BatchDisposition
{
  PerInstance,     // see StowResponse::instances for each SOP Instance UID that was sent
  TokenRejected,   // 401: refresh the token once and retry, then pause
  Forbidden,       // 403: pause and retry with backoff (role assignments take minutes)
  WrongEndpoint,   // 404, 424: pause with a configuration status
  TooLarge,        // 413: split the batch and retry
  Transient        // 429, 5xx and other unexpected codes: pause with backoff
};


struct StowResponse
{
  BatchDisposition disposition = BatchDisposition::PerInstance;
  std::map<std::string, InstanceResult> instances;  // by SOP Instance UID, one per UID sent
  double retryAfterSeconds = -1;  // from Retry-After, -1 when absent or unreadable
  std::string message;  // the service's error text or a description of what was wrong
};


// Interprets an answer of the STOW-RS route for a batch whose parts had the SOP Instance UIDs
// sentUids. Never throws on a malformed body: an answer that cannot be read gives RetryLater for
// every instance that it does not clearly confirm, so that nothing is marked Mirrored that the
// service did not confirm.
StowResponse ParseStowResponse(long httpStatus, const std::string& contentType,
                               const std::string& body, const std::string& retryAfter,
                               const std::vector<std::string>& sentUids);

// Parses a Retry-After value (delta-seconds or an HTTP date, relative to nowSeconds since the
// epoch); returns -1 when it cannot be read.
double ParseRetryAfter(const std::string& value, int64_t nowSeconds);
}  // namespace AzureDicom
