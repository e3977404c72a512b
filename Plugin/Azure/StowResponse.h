#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace AzureDicom
{
// DICOM status codes of the Azure DICOM service that the plugin acts on.
const unsigned int REASON_PROCESSING_FAILURE = 272;    // 0x0110: retried with backoff
const unsigned int REASON_VALIDATION_FAILED = 43264;   // 0xA900: refused, never retried
const unsigned int REASON_STUDY_UID_MISMATCH = 43265;  // 0xA901: older services, refused
const unsigned int REASON_ALREADY_EXISTS = 45070;      // 0xB00E: a success, never retried
const unsigned int REASON_BEING_CREATED = 45071;       // 0xB00F: retried after a delay

// Warning reasons of stored instances, as the service's conformance statement describes them.
const unsigned int WARNING_COERCED = 45063;         // 0xB007: data set does not match SOP class
const unsigned int WARNING_ELEMENTS_DISCARDED = 1;  // v2: the data set has validation warnings


// The action for one instance of a batch, after a response of the service.
enum class InstanceDisposition
{
  Mirrored,        // stored by this request
  AlreadyPresent,  // the service had it already (45070)
  RetryLater,      // 45071, or unconfirmed: retried after a delay, counting an attempt
  RetryBackoff,    // 272 processing failure: retried with backoff, then Failed
  Failed           // refused for good (validation, malformed request)
};


// The outcome of one SOP instance. message is "" for an instance stored without a warning.
struct InstanceResult
{
  InstanceDisposition disposition = InstanceDisposition::RetryLater;
  unsigned int failureReason = 0;
  unsigned int warningReason = 0;
  std::string message;
};


// The meaning of the whole response for the dispatcher.
enum class BatchDisposition
{
  PerInstance,    // see StowResponse::instances for each SOP Instance UID that was sent
  TokenRejected,  // 401: refresh the token once and retry, then pause
  Forbidden,      // 403: pause and retry with backoff (role assignments take minutes)
  WrongEndpoint,  // 404, 424: pause with a configuration status
  TooLarge,       // 413: split the batch and retry
  Transient       // 429, 5xx and other unexpected codes: pause with backoff
};


struct StowResponse
{
  BatchDisposition disposition = BatchDisposition::PerInstance;
  // By SOP Instance UID, one per UID sent when disposition is PerInstance, empty otherwise.
  std::map<std::string, InstanceResult> instances;
  double retryAfterSeconds = -1;  // from Retry-After, -1 when absent or unreadable
  // The service's error text (trimmed, printable) or a description of what was wrong. It is ""
  // when the response was read and needs no explanation.
  std::string message;
};


// Interprets a response of the STOW-RS route for a batch whose parts had the SOP Instance UIDs
// sentUids. A 400 or 415 gives Failed for every instance but those that a DICOM JSON body lists
// as stored. Never throws on a malformed body: a 200, 202 or 409 that cannot be read gives
// RetryLater for every instance, so that nothing is marked Mirrored that the service did not
// confirm. Besides the JSON parse of a DICOM JSON body, it reads only the first KB of the body.
StowResponse ParseStowResponse(long httpStatus, const std::string& contentType,
                               const std::string& body, const std::string& retryAfter,
                               const std::vector<std::string>& sentUids);

// Parses a Retry-After value (delta-seconds or an HTTP date in any of the three formats of
// RFC 9110, relative to nowSeconds since the epoch). Returns the delay in seconds, at most 1e9,
// 0 for a date in the past, and -1 when the value is absent or cannot be read.
double ParseRetryAfter(const std::string& value, int64_t nowSeconds);

// Returns a printable excerpt of the first maxBytes bytes of text, for a status message. Control
// characters become spaces, runs of spaces one space, and bytes that are not UTF-8 '?'. A text
// that is cut ends at a character boundary, followed by "...".
std::string MakePrintableExcerpt(const std::string& text, size_t maxBytes);
}  // namespace AzureDicom
