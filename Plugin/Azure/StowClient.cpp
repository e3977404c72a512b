#include "Azure/StowClient.h"

#include "Azure/Redaction.h"
#include "Common/Clock.h"
#include "Common/Exception.h"

namespace AzureDicom
{
StowClient::StowClient(const std::string& stowUrl, const TlsSettings& tls,
                       unsigned int timeoutSeconds, std::shared_ptr<TokenCache> tokens)
    : stowUrl_(stowUrl), timeoutSeconds_(timeoutSeconds), tokens_(std::move(tokens)), http_(tls)
{
}


HttpResponse StowClient::Post(const std::string& body, const std::string& contentType)
{
  return Execute("POST", stowUrl_, &body, nullptr, contentType);
}


HttpResponse StowClient::Put(const std::string& body, const std::string& contentType)
{
  return Execute("PUT", stowUrl_, &body, nullptr, contentType);
}


HttpResponse StowClient::Delete(const std::string& url)
{
  return Execute("DELETE", url, nullptr, nullptr, "");
}


HttpResponse StowClient::Send(const RequestBody& body, const std::string& contentType,
                              bool upsert)
{
  return Execute(upsert ? "PUT" : "POST", stowUrl_, nullptr, &body, contentType);
}


HttpResponse StowClient::Execute(const std::string& method, const std::string& url,
                                 const std::string* body, const RequestBody* pieces,
                                 const std::string& contentType)
{
  HttpRequest request;
  request.method = method;
  request.url = url;
  request.body = body;
  request.pieces = pieces;
  request.timeoutSeconds = timeoutSeconds_;
  if (!contentType.empty())
  {
    request.headers.emplace_back("Content-Type", contentType);
  }
  request.headers.emplace_back("Accept", "application/dicom+json");

  if (tokens_)
  {
    try
    {
      lastToken_ = tokens_->GetToken(NowMs());
    }
    catch (const Exception& e)
    {
      // Also when the token endpoint is unreachable: Unauthorized means for the caller that no
      // request went to the service.
      throw Exception(ErrorCode::Unauthorized, e.what());
    }

    request.headers.emplace_back("Authorization", "Bearer " + lastToken_);
  }

  HttpResponse response = http_.Execute(request);
  if (tokens_)
  {
    RedactToken(response, lastToken_);
  }

  return response;
}


void StowClient::InvalidateToken()
{
  // Only the rejected token is forgotten: when several workers get a 401 for the same token,
  // the cache refreshes it once.
  if (tokens_)
  {
    tokens_->Invalidate(lastToken_);
  }
}
}  // namespace AzureDicom
