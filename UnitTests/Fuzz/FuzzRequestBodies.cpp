// Feeds arbitrary request bodies to the checks of the REST API's bodies. Each must accept the
// body or throw AzureDicom::Exception(BadRequest), never crash or throw anything else.

#include "Common/Exception.h"
#include "Sync/RequestBodies.h"

#include <cstddef>
#include <cstdint>
#include <cstdlib>

namespace
{
const size_t MAX_LABEL_LENGTH = 200;

template <typename Check>
void ExpectBadRequestOrSuccess(Check check)
{
  try
  {
    check();
  }
  catch (const AzureDicom::Exception& e)
  {
    if (e.GetCode() != AzureDicom::ErrorCode::BadRequest)
    {
      std::abort();  // a body error must be a 400
    }
  }
}
}  // namespace


extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size)
{
  Json::Value body;
  try
  {
    body = AzureDicom::ParseRequestBody(reinterpret_cast<const char*>(data), size);
  }
  catch (const AzureDicom::Exception& e)
  {
    if (e.GetCode() != AzureDicom::ErrorCode::BadRequest)
    {
      std::abort();
    }
    return 0;
  }

  ExpectBadRequestOrSuccess([&] { AzureDicom::ParseSyncRequest(body, 0); });
  ExpectBadRequestOrSuccess([&] { AzureDicom::ParseRetryRequest(body); });
  ExpectBadRequestOrSuccess([&] { AzureDicom::ParseSnapshotLabel(body, MAX_LABEL_LENGTH); });
  ExpectBadRequestOrSuccess([&] { AzureDicom::ParseRollbackRequest(body, "1"); });
  return 0;
}
