// Feeds arbitrary service responses to the STOW-RS response parser. The first byte picks the
// HTTP status and the second the content type; the rest is the body. The parser must never
// crash, and must never report an instance Mirrored or AlreadyPresent that was not sent.

#include "Azure/StowResponse.h"

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

namespace
{
const long STATUSES[] = {200, 202, 409, 400, 401, 403, 404, 413, 415, 424, 429, 500, 503, 204};
const char* const CONTENT_TYPES[] = {"application/dicom+json", "application/json", "text/plain", "",
                                     "application/dicom+json; charset=utf-8"};

const std::vector<std::string> SENT_UIDS = {"1.2.826.0.1.3680043.10.1.1",
                                            "1.2.826.0.1.3680043.10.1.2", "1.2.3"};
}  // namespace


extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size)
{
  if (size < 2)
  {
    return 0;
  }

  const long status = STATUSES[data[0] % (sizeof(STATUSES) / sizeof(STATUSES[0]))];
  const char* contentType =
      CONTENT_TYPES[data[1] % (sizeof(CONTENT_TYPES) / sizeof(CONTENT_TYPES[0]))];
  const std::string body(reinterpret_cast<const char*>(data + 2), size - 2);

  const AzureDicom::StowResponse response =
      AzureDicom::ParseStowResponse(status, contentType, body, "", SENT_UIDS);

  for (const auto& entry : response.instances)
  {
    bool sent = false;
    for (const std::string& uid : SENT_UIDS)
    {
      sent = sent || uid == entry.first;
    }
    const bool confirmed =
        entry.second.disposition == AzureDicom::InstanceDisposition::Mirrored ||
        entry.second.disposition == AzureDicom::InstanceDisposition::AlreadyPresent;
    if (!sent && confirmed)
    {
      std::abort();  // a confirmation of an instance that was never sent
    }
  }
  return 0;
}
